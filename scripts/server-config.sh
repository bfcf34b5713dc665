# Sourced (not run) by the scripts that start a throwaway `offline-signer serve` on a SoftHSM token
# (api-fuzz.sh, soak.sh): the parts of its set-up they share.

# free_port: prints a TCP port that is free on the loopback interface now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# softhsm_server_config PORT LABEL: prints a config.toml for a server on 127.0.0.1:PORT with its
# store in data/ and the SoftHSM token LABEL (PIN in hsm/user.pin), both relative to the config file,
# as scripts/softhsm-init.sh lays them out. Callers append their own tables.
softhsm_server_config() {
    cat <<TOML
listen = "127.0.0.1:$1"
data_dir = "data"
restrict_access = true

[signer]
kind = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "$2"
pin_file = "hsm/user.pin"
pool_size = 2
TOML
}
