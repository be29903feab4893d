module github.com/pgpart/pgpart/tools/testenv/pause

go 1.26.0
