"""Reports: the console dashboard's figures and, later, the program's full KPIs and points liability."""
