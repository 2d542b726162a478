from cmkd.harness.cli import entry

entry()
