import json

import pytest

from transcribe_common.errors import InvalidInput
from transcribe_common.events import access_record, parse

# An access-format element as MinIO's Redis target writes it: key query-escaped, metadata in Go
# canonical case, content-type inside userMetadata.
MINIO_PUT = json.dumps(
    [
        {
            "Event": [
                {
                    "eventVersion": "2.0",
                    "eventSource": "minio:s3",
                    "awsRegion": "",
                    "eventTime": "2026-11-20T10:00:00.000Z",
                    "eventName": "s3:ObjectCreated:CompleteMultipartUpload",
                    "userIdentity": {"principalId": "minioadmin"},
                    "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "10.0.0.5"},
                    "responseElements": {"x-amz-id-2": "abc", "x-amz-request-id": "17A"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "Config",
                        "bucket": {
                            "name": "transcribe-inbox",
                            "ownerIdentity": {"principalId": "minioadmin"},
                            "arn": "arn:aws:s3:::transcribe-inbox",
                        },
                        "object": {
                            "key": "meetings%2F2026%2Fweekly+sync+%C3%A9t%C3%A9.mp3",
                            "size": 7340032,
                            "eTag": "d41d8cd98f00b204e9800998ecf8427e-2",
                            "contentType": "audio/mpeg",
                            "userMetadata": {
                                "content-type": "audio/mpeg",
                                "X-Amz-Meta-Language": "id",
                                "X-Amz-Meta-Db-Id": "991",
                            },
                            "sequencer": "17A2B3C4D5E6F708",
                        },
                    },
                    "source": {"host": "10.0.0.5", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"},
                }
            ],
            "EventTime": "2026-11-20T10:00:00Z",
        }
    ]
)


def test_minio_record_is_decoded() -> None:
    (event,) = parse(MINIO_PUT)
    assert event.bucket == "transcribe-inbox"
    assert event.key == "meetings/2026/weekly sync été.mp3"
    assert event.metadata == {"language": "id", "db-id": "991"}
    assert event.etag == "d41d8cd98f00b204e9800998ecf8427e-2"
    assert event.version == event.etag  # unversioned bucket: the eTag tells uploads apart


@pytest.mark.parametrize("name", ["s3:ObjectCreated:Copy", "s3:ObjectCreated:PutTagging", "s3:ObjectRemoved:Delete"])
def test_events_that_are_not_new_objects_are_left_out(name: str) -> None:
    assert parse(MINIO_PUT.replace("s3:ObjectCreated:CompleteMultipartUpload", name)) == []


@pytest.mark.parametrize("raw", ["not json", "[{}]", '[{"Event": [{"eventName": "s3:ObjectCreated:Put"}]}]'])
def test_malformed_events_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse(raw)


def test_records_we_emit_parse_like_minio_ones() -> None:
    raw = access_record(
        "transcribe-inbox", "a dir/b+c.mp3", size=3, etag="e", content_type="audio/mpeg", metadata={"db-id": "7"}
    )
    assert "a+dir%2Fb%2Bc.mp3" in raw
    assert "X-Amz-Meta-Db-Id" in raw
    (event,) = parse(raw)
    assert (event.key, event.metadata, event.size) == ("a dir/b+c.mp3", {"db-id": "7"}, 3)
