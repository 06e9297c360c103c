module nvsrelay.local/nvsrelay

go 1.19
