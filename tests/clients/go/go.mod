module warden.test/goclient

go 1.19
