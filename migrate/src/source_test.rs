use super::*;

#[test]
fn only_a_refused_login_or_an_unverified_certificate_ends_the_wait() {
    // As librdkafka 2.12 words them (seen against the Kafka peer's SASL_SSL listener).
    let refused = [
        (
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://127.0.0.1:19094/bootstrap: SASL authentication error: Authentication failed: Invalid username or password (after 301ms in state AUTH_REQ)",
        ),
        (
            RDKafkaErrorCode::SSL,
            "sasl_ssl://127.0.0.1:19094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified",
        ),
    ];
    for (code, reason) in refused {
        assert!(is_refusal(code, reason), "{reason}");
    }
    let passing = [
        (
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://k:9094/1: SASL SCRAM-SHA-256 mechanism handshake failed: Local: Broker transport failure",
        ),
        (
            RDKafkaErrorCode::SSL,
            "ssl://k:9093/1: SSL transport error: Connection timed out",
        ),
        (
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://k:9093/1: Connect to ipv4#10.0.0.1:9093 failed: Connection refused",
        ),
    ];
    for (code, reason) in passing {
        assert!(!is_refusal(code, reason), "{reason}");
    }
}
