"""The browser itself: sign in to the console on a desktop."""

from tests.browser import look
from tests.conftest import PASSWORD


def test_staff_sign_in_in_a_real_browser_shows_the_dashboard(desktop, make_staff):
    staff = make_staff("analyst")
    desktop.goto("/console/")
    look(desktop, "console-login")
    desktop.get_by_label("Email").fill(staff["email"])
    desktop.get_by_label("Password").fill(PASSWORD)
    desktop.get_by_role("button", name="Sign in").click()
    desktop.wait_for_url("**/console/")
    assert desktop.get_by_role("heading", level=1).inner_text() == "Dashboard"
    look(desktop, "console-dashboard")
