from fakequant.cli import main

raise SystemExit(main())
