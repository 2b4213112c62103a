"""What a token may do: the scopes every operation requires (declared on its
route, stated in the API document), and what each role has."""

SCOPES = ("sessions:read", "sessions:write", "sessions:command", "files:read", "files:write",
          "admin:read", "admin:write", "act-as")

# A role's scopes; a token's are a subset of its role's (its owner's).
ROLE_SCOPES = {
    "user": frozenset(("sessions:read", "sessions:write", "sessions:command", "files:read", "files:write")),
    "admin": frozenset(SCOPES),
}
