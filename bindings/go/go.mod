module libmxgw.org/mxgw

go 1.19
