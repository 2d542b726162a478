from cmkd.harness.cli.main import entry

entry()
