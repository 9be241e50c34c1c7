from mgsrgan.cli.main import main

raise SystemExit(main())
