module github.com/tenure-dev/tenure/clients/go

go 1.19
