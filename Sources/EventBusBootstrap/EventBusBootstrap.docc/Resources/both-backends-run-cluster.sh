$ export EVENT_BUS_BACKEND=jetstream
$ export EVENT_BUS_NATS_SERVERS=nats://n1:4222,nats://n2:4222,nats://n3:4222
$ export EVENT_BUS_JETSTREAM_REPLICAS=3
$ .build/debug/billing-service
