from mgsrgan.cli import main

raise SystemExit(main())
