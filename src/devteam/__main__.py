from devteam.cli import app

app(prog_name="devteam")
