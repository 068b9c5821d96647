"""cunzhi notifications: every notice, reminder and alert delivered once (通知提醒)."""
