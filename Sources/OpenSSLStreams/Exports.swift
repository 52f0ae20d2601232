// The stream layer's API is made of the core's types (SSLContextArgument, TLSConfiguration, TLSEngine,
// TimeoutValue …): importing OpenSSLStreams brings them along.
@_exported import OpenSSLTLS
