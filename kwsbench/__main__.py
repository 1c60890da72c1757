from kwsbench.cli import main

raise SystemExit(main())
