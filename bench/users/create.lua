-- POST /v1/users: a new user per request (argon2id hashing dominates by design).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name": "Ozzy Osbourne", "password": "correct-horse-battery-staple"}'
