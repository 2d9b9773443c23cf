from pricer.cli import main

main()
