process = 3
