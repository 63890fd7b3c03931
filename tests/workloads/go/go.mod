module pytrace.test/goserver

go 1.21
