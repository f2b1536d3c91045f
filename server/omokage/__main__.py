from omokage.cli import main

raise SystemExit(main())
