from mailbot.ops.cli import main

raise SystemExit(main())
