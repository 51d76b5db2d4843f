module gohub

go 1.19
