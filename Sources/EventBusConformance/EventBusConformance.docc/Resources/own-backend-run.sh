$ swift test --filter "MyBus conformance"
