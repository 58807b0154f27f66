"""Example loops written against the real provider SDKs, replayed from committed cassettes."""
