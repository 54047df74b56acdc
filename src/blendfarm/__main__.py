from blendfarm.cli.main import main

main()
