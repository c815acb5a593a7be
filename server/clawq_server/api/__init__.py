"""The gRPC edge: servicers translating protobuf to domain calls, auth, error mapping."""
