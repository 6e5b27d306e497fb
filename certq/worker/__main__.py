from certq.worker.cli import main

main()
