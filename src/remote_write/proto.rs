//! The Prometheus remote_write 1.0 messages (`prompb/remote.proto`, `types.proto`): only the
//! fields a sender fills. Field numbers are the spec's; prost derives the wire encoding.

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes a Go prompb encoder produces for the same message (hand-assembled from the
    /// spec: field 1 = timeseries, length-delimited; inside it field 1 = label, 2 = sample).
    #[test]
    fn encodes_as_the_spec_says() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
        };
        let label = [&[0x0a, 8][..], b"__name__", &[0x12, 2], b"up"].concat();
        let sample = [&[0x09][..], &1.0f64.to_le_bytes(), &[0x10, 0xe8, 0x07]].concat();
        let ts = [
            &[0x0a, label.len() as u8][..],
            &label,
            &[0x12, sample.len() as u8],
            &sample,
        ]
        .concat();
        let want = [&[0x0a, ts.len() as u8][..], &ts].concat();
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(WriteRequest::decode(want.as_slice()).unwrap(), req);
    }
}
