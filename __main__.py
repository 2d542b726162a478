from cmkd.harness.cli import main

raise SystemExit(main())
