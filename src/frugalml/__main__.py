from frugalml.cli import run

run()
