module flockpeers

go 1.19
