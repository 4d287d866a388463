"""`devicehooks publish-ui`: the UI's files go to the bucket with their types, and the CDN is refreshed."""

from __future__ import annotations

from devicehooks import aws
from devicehooks_dev.local.stack import LocalStack
from devicehooks_dev.publish import publish, ui_files
from tests.conftest import ROOT


def test_every_ui_file_is_uploaded_with_its_content_type_and_the_cache_is_invalidated(stack: LocalStack) -> None:
    s3, cloudfront = aws.client("s3"), aws.client("cloudfront")
    s3.create_bucket(Bucket="devicehooks-ui-publish-test")
    distribution = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "publish-test",
            "Comment": "test",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "ui",
                        "DomainName": "devicehooks-ui-publish-test.s3.us-east-1.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {"TargetOriginId": "ui", "ViewerProtocolPolicy": "redirect-to-https"},
        }
    )["Distribution"]["Id"]

    keys = publish(s3, cloudfront, "devicehooks-ui-publish-test", distribution, ROOT / "ui")

    assert "index.html" in keys and len(keys) == len(ui_files(ROOT / "ui"))
    index = s3.head_object(Bucket="devicehooks-ui-publish-test", Key="index.html")
    assert index["ContentType"] == "text/html; charset=utf-8"
    assert index["CacheControl"] == "no-cache"
    script = next(k for k in keys if k.endswith(".js"))
    assert s3.head_object(Bucket="devicehooks-ui-publish-test", Key=script)["ContentType"].startswith(
        ("text/javascript", "application/javascript")
    )
    invalidations = cloudfront.list_invalidations(DistributionId=distribution)["InvalidationList"]
    assert invalidations["Quantity"] == 1
