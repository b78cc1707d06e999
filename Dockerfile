# Courier in Orthanc, with the same Debian packages and venv steps as `make install`.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      orthanc orthanc-python orthanc-dicomweb orthanc-postgresql dcmtk dcm2niix python3-venv make ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /courier
COPY requirements.txt Makefile ./
# The venv must be made with Debian's /usr/bin/python3: orthanc-python embeds that interpreter.
RUN /usr/bin/python3 -m venv .venv && .venv/bin/pip install --no-cache-dir -r requirements.txt
COPY plugin/ plugin/
COPY lua-free-scripts/ lua-free-scripts/
COPY web/ web/
COPY orthanc.json ./

ENV TCP_NODELAY=1
VOLUME ["/courier/data"]
EXPOSE 8042 4242
# Use another configuration by mounting it and passing its path.
CMD ["Orthanc", "/courier/orthanc.json"]
