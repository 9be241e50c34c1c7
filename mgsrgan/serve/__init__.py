"""`mgsrgan serve`: the ensemble behind an HTTP API and a web page (app.py), with a bounded work queue."""
