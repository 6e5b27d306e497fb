from certq.worker.cli import main

# Guarded so the `certq-worker` console script (certq.worker.__main__:main) can import this module.
if __name__ == "__main__":
    main()
