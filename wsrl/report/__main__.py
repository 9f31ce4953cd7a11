from wsrl.report.cli import main

main()
