from certq.cli import main

main()
