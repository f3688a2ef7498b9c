$ nats-server -js &
$ export EVENT_BUS_BACKEND=jetstream EVENT_BUS_NATS_SERVERS=nats://127.0.0.1:4222
$ .build/debug/billing-service &
$ .build/debug/billing-service &
$ eventbus subscribe payment.settled &
$ eventbus publish order.created '{"orderID":"o-1","amount":42}' \
    --type com.example.order.created --source /shop --content-type application/json
