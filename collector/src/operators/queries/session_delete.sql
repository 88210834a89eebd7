DELETE FROM transmissor.sessions WHERE token_sha256 = $1
