# The MLflow tracking server of docker/docker-compose.yml: MLflow (the version the tests run
# against) plus boto3, which the server needs to keep artifacts in MinIO (--artifacts-destination
# s3://…). The upstream MLflow image ships without boto3.
FROM docker.io/library/python:3.11-slim-bookworm
RUN pip install --no-cache-dir mlflow==3.17.2 boto3==1.44.5 \
 && useradd --uid 10001 --gid 0 --home-dir /mlflow --create-home mlflow
USER 10001
WORKDIR /mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]
