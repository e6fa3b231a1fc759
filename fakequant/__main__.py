from fakequant.cli import run

run()
