"""Each Lambda function's wiring: what functions/<name>/app.py calls."""
