"""Races settled by unique constraints, on the suite's real database."""

import threading

import pytest

from tests.conftest import PASSWORD, assert_problem

RACERS = 6


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_concurrent_signups_with_one_email_create_exactly_one_member(app, row_counts):
    barrier = threading.Barrier(RACERS)
    responses = []

    def sign_up(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        # Different cases of one address: the case-insensitive unique index must still decide.
        email = "Race@Example.test" if n % 2 else "race@example.TEST"
        responses.append(client.post("/v1/signup", json={"email": email, "password": PASSWORD}))

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 1
    for response in refused:
        assert_problem(response, 409, "conflict")
    assert row_counts()["members"] == 1
