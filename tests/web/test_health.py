"""GET /healthz tells a load balancer whether the database answers."""

from chargeshed import create_app


def test_healthz_is_503_naming_the_error_when_the_database_is_down(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "error" and response.json["db"] == "OperationalError"
