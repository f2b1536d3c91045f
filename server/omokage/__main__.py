from omokage.cli import main

if __name__ == "__main__":   # not when a spawned child process (the sharper previews' worker) imports this module
    raise SystemExit(main())
