import pytest

from routeiq_assets.redact import mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@mlflow:5000", "http://user:***@mlflow:5000"),
        ("https://u:p%40ss@host/prefix/?x=1", "https://u:***@host/prefix/?x=1"),
        ("postgresql://dagster:pw@db:5432/dagster", "postgresql://dagster:***@db:5432/dagster"),
        ("http://user:pa@ss@host:5000/api", "http://user:***@host:5000/api"),
    ],
)
def test_the_userinfo_password_is_masked_and_the_user_kept(url, shown):
    assert mask_url(url) == shown


def test_secret_looking_query_parameters_are_masked_and_the_rest_kept():
    presigned = (
        "https://models.s3.amazonaws.com/knn/router.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20261207&X-Amz-Date=20261207T000000Z"
        "&X-Amz-Expires=3600&X-Amz-Signature=abcdef0123&X-Amz-Security-Token=tok"
    )
    assert mask_url(presigned) == (
        "https://models.s3.amazonaws.com/knn/router.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=***&X-Amz-Date=20261207T000000Z"
        "&X-Amz-Expires=3600&X-Amz-Signature=***&X-Amz-Security-Token=***"
    )
    query = "http://jaeger:16686/api/traces?service=gw&password=a&token=b&api_key=c&secret=d&sig=e"
    assert mask_url(query) == (
        "http://jaeger:16686/api/traces?service=gw&password=***&token=***&api_key=***"
        "&secret=***&sig=***"
    )
    assert (
        mask_url("https://h/cb#access_token=xyz&state=1") == "https://h/cb#access_token=***&state=1"
    )


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5000",
        "https://mlflow.example.com/prefix?experiment=routers#/runs",
        "http://user@host:5000",
        "sqlite:////home/routeiq/mlflow/mlflow.db",
        "s3://models-bucket/routeiq",
        "/var/lib/routeiq/artifacts",
        "key=value password: not a url",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text):
    assert mask_url(text) == text


def test_every_url_in_a_message_is_masked():
    message = (
        "API request to http://ops:hunter2@10.0.0.5:5000/api/2.0/mlflow/runs/create failed "
        "with exception HTTPConnectionPool(host='10.0.0.5', port=5000); artifacts at "
        "'s3://bucket/x?X-Amz-Signature=feed'"
    )
    masked = mask_url(message)
    assert "hunter2" not in masked and "feed" not in masked
    assert "http://ops:***@10.0.0.5:5000/api/2.0/mlflow/runs/create failed" in masked
    assert "'s3://bucket/x?X-Amz-Signature=***'" in masked
