$ swift test
$ swift build
$ .build/debug/billing-service
