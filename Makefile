# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DIR := .bench-node
NODE_STAMP := $(NODE_DIR)/.installed

.PHONY: install run test bench soak fuzz chaos lint sample-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# make run ARGS="--port 8443 --data-dir /mnt/x": ARGS are options of `recorder serve`. certs init
# looks in the folder a --certs-dir among them names (the default folder otherwise), and is
# skipped under --plain-http, which needs no certificates.
run: install
	@set -- $(ARGS); certs_dir=; plain=; \
	while [ $$# -gt 0 ]; do \
		case "$$1" in \
			--certs-dir) certs_dir="$$2"; shift ;; \
			--certs-dir=*) certs_dir="$${1#--certs-dir=}" ;; \
			--plain-http) plain=1 ;; \
		esac; \
		shift; \
	done; \
	if [ -z "$$plain" ]; then \
		echo "$(BIN)/recorder certs init $${certs_dir:+--dir \"$$certs_dir\"}"; \
		$(BIN)/recorder certs init $${certs_dir:+--dir "$$certs_dir"}; \
	fi
	$(BIN)/recorder serve $(ARGS)

test: install
	$(BIN)/python -m pytest

# The bench extra (the peers the ingest is measured against) is installed here only: recording
# and the tests do not need it. So is node-media-server, the RTMP ingest's peer (the server the
# Mentra glasses docs recommend), with npm: pinned by recorder/bench/node/package.json and its
# lock file, into $(NODE_DIR)/, where the rtmp section looks for it.
bench: install $(NODE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m recorder.bench

$(NODE_STAMP): recorder/bench/node/package.json recorder/bench/node/package-lock.json
	mkdir -p $(NODE_DIR)
	cp recorder/bench/node/package.json recorder/bench/node/package-lock.json $(NODE_DIR)/
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund
	touch $@

# The hour-long form of the bench's soak section (`make bench` runs it for ten minutes): 50
# simulated devices stream over TLS to one `recorder serve` for an hour, ending sessions and
# starting new ones (some 6000 sessions), while the server's RSS, open file descriptors and
# /status size are sampled; it says whether they stayed flat and whether any file of an ended
# session was left open. About 62 minutes in all; the
# sessions take some 30 GB under the current folder while it runs (removed at the end).
soak: install
	mkdir -p bench-results
	$(BIN)/python -m recorder.bench.soak --duration 3600 --json bench-results/soak.json

# The long form of tests/test_fuzz.py (`make test` runs its short form): a million generated
# inputs for each parser that takes bytes from the network, the HTTP ones sent to a real
# `recorder serve` (HTTPS gets a hundredth of that). Measured on the whole run, on 2 cores
# shared with other work, against the default two workers: wire decoder 417 inputs/s, RTMP
# chunks 1879/s, AMF0 1454/s, FLV 1748/s (about 70 minutes for the four), HTTP 83-92/s and HTTPS
# 70-96/s: about three hours more. The HTTP targets wait, not compute: fuzzed requests naming one
# session at once attach one after the other, across workers each a hand-over. Four runs side by
# side with their own servers (FUZZ_INPUTS=250000 and --hypothesis-seed 1 to 4, -k http_server)
# give the HTTP targets' million in under an hour.
fuzz: install
	FUZZ_INPUTS=1000000 $(BIN)/python -m pytest tests/test_fuzz.py -q -s

# The long form of tests/test_chaos.py (`make test` runs its short form, 3 kills): 100 kill -9s of
# `recorder serve` at seeded random moments while 3 devices stream to it over TLS, each followed
# by a restart, the checks, the devices' resend and the checks again. Measured on 2 cores shared
# with other work: 7 to 15 s a round (11 s on average over 76 rounds), about 20 minutes in all.
# CHAOS_SEED=<n> starts at another seed (round k has seed n + k); CHAOS_SEED=<seed> CHAOS_KILLS=1
# replays one round.
chaos: install
	CHAOS_KILLS=100 $(BIN)/python -m pytest tests/test_chaos.py -q -s

# The long form of tests/test_power_loss.py (`make test` runs its short form, 3 power cuts and
# the negative controls): 100 power cuts at seeded random moments while 3 devices stream to
# `recorder serve` over TLS, on a scratch ext4 filesystem shut down at the cut, each followed by
# a remount, the restart's recovery, the checks, the devices' sending on and the checks again.
# Needs root, a loop device and e2fsprogs. Measured on 2 cores shared with other work (load 4
# to 21): 6 to 36 s a round, 20 s on average, 33 minutes in all with the controls; 100 of 100
# cuts survived. POWER_SEED=<n> starts at another seed (round k has seed n + k);
# POWER_SEED=<seed> POWER_CUTS=1 replays one round.
.PHONY: power-loss
power-loss: install
	POWER_CUTS=100 $(BIN)/python -m pytest tests/test_power_loss.py -q -s

lint: install
	$(BIN)/ruff check recorder tests

sample-data: install
	rm -rf sample_data/1M0Y*
	$(BIN)/recorder simulate --devices 3 --duration 2 --seed 7 --profile mp_streaming_demo \
		--session-id 08e3ef2b-f8ab-4966-9f9e-92a908c29ce2 --out sample_data

clean:
	rm -rf $(VENV) $(NODE_DIR) .pytest_cache build dist
