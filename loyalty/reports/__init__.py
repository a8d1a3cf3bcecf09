"""Reports: the console dashboard's figures, the program's KPIs over a period (`summary`) and the points
liability (`liability`), as JSON, CSV (`csv_files`) and console pages. Read-only, grouped queries."""
