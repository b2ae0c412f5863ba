package apiv1

// Ended reports whether a task in this status will not change again:
// succeeded, failed, cancelled or lost.
func (s TaskStatus) Ended() bool {
	switch s {
	case TaskStatus_TASK_STATUS_SUCCEEDED, TaskStatus_TASK_STATUS_FAILED,
		TaskStatus_TASK_STATUS_CANCELLED, TaskStatus_TASK_STATUS_LOST:
		return true
	}
	return false
}
