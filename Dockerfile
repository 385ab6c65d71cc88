# The demo app. CI builds it from a locally made base image:
#   ENVTASKS_BUILD_ARGS=BASE_IMAGE=envtasks/python-base:bookworm
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
WORKDIR /app
COPY app/server.py /app/server.py
# Run as an unprivileged user; the app needs no root.
USER 65534:65534
ENV PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["python3", "/app/server.py"]
